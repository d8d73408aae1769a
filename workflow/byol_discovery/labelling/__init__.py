"""A local web page for labelling a dataset's ranked objects: `byol-discovery label`.

``labels`` keeps labels.csv (the file the active_learning rule reads), ``results`` reads a
dataset's results folder, ``images`` draws cutouts, ``retrain`` runs the rule, ``app`` is the
Starlette application and ``command`` the command line that starts it.
"""
