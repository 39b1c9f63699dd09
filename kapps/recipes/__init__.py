"""The recipes: one script per application, each a story read top to bottom (data, model, train, evaluate, show).

Three ways to run one, all the same file:

    kapps train lenet5 --epochs 5        # from an installed kapps, in any working directory
    python recipes/lenet5.py --epochs 5  # in a checkout: the top-level recipes/ is a link to this folder
    python -m kapps.recipes.lenet5 --epochs 5

Each module's `main` is a click command with the engine's shared options (`kapps.train.recipe_command`) and writes
its run folder under `saved_models/` in the working directory. The scripts live here, inside the package, so that
the wheel carries them; the checkout's `recipes/` points here rather than holding a second copy. Nothing in the
library imports a recipe (pyproject.toml's import contracts hold that): `kapps train` finds them by module name.
"""
