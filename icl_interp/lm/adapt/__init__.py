"""The adaptation wing: continue training a causal LM on ICL episodes under a prefix or a
causal mask (``icl-interp adapt``), and the Table 2 analog over both objectives
(``icl-interp adapt-table``).

Modules, bottom up: ``config`` (``AdaptConfig``), ``episodes`` (``EpisodeStream``), ``training``
(parameters, masks, loss, validation, lr schedule), ``run`` (the ``adapt`` command: resume,
checkpoints, the run's self-watch, the model card), ``table_config`` (``TableConfig``),
``table`` (the ``adapt-table`` command on the run kernel) and ``page`` (its results page from
the committed archive).
"""
