#!/usr/bin/env python
"""Publish a trained model folder, or the Gradio Space folder, to the Hugging Face Hub.

The token comes from `hf auth login` or the HF_TOKEN environment variable, never from the command line.
Examples (see README "Publish to the Hub"):
    python scripts/push_to_hub.py --folder outputs/student --repo_id you/deit-tiny-cxr --dry-run
    python scripts/push_to_hub.py --folder outputs/student --repo_id you/deit-tiny-cxr --private --revision v1
    python scripts/push_to_hub.py --folder space --repo_id you/deit-cxr-demo --repo_type space \
        --space_model_id you/deit-tiny-cxr
"""

import sys

from hf_deitcxr.hub import push_main

if __name__ == "__main__":
    sys.exit(push_main(sys.argv[1:]))
