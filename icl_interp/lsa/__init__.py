"""Linear self-attention theory (paper 2308.06912): LSA layers that run gradient descent.

- ``model``: the LSA layer in matrix form (explicit K, Q, V, P; any mask) and eq. 5.
- ``reference``: closed-form GD recursions (prefixLM, causalLM, causalLM2, online GD).
- ``stationary``: stationary points (least squares, T and S matrices) and contraction factors.
- ``experiment``: the ``icl-interp lsa`` command (paper Figures 2 and 4); ``plots``: its figures;
  ``config``: its settings and options (import-light, so option mistakes are reported at once).
"""
