"""Slowdown attacks on early-exit models, decomposed as TextAttack does it.

An attack is a goal function (``goals``), a transformation (``transformations``),
constraints (``constraints``) and a search method (``search``), composed by a
recipe (``recipes``) and run against one query-counting ``victim.Victim``.
Nothing here imports torch, nltk or matplotlib at import time.
"""
