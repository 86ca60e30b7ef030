"""Tune the CPU recipe of the distilled student on the validation split (see hf_deitcxr/tuning.py).

    python scripts/tune_recipe.py --teacher_dir outputs/quickstart/teacher --output_dir outputs/tuning \
        --name lr1e-3 --overrides student_learning_rate=1e-3 --images_seen 9600 --eval_every_images 2400
"""

import sys

from hf_deitcxr.experiments.tuning import tune_main

if __name__ == "__main__":
    sys.exit(tune_main())
