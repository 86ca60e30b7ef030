#!/usr/bin/env python
"""Train a CNN teacher, a distilled DeiT student or a DeiT baseline on radiographs.

Examples (see README):
    python scripts/train.py --stage teacher --dataset ../shared/data/cxr3 --output_dir outputs/teacher
    accelerate launch scripts/train.py --stage distill --teacher_name_or_path outputs/teacher \
        --dataset ../shared/data/cxr3 --output_dir outputs/student --bf16
"""

import sys

from hf_deitcxr.cli import train as train_main

if __name__ == "__main__":
    sys.exit(train_main(sys.argv[1:]))
