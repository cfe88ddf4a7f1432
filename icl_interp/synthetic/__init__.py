"""Trained softmax transformers on synthetic ICL tasks (Ding et al. 2308.06912, section 5.2):
tasks, the hooked SL/UL model, training, and the Table 1 / Figure 3 experiment."""
