"""``python -m ulcerseg.training <command>``: the ulcerseg CLI as a module, e.g. for torchrun::

torchrun --nproc_per_node=4 -m ulcerseg.training train --config ... --data ... -o runs/X
"""

from ulcerseg.cli import run

if __name__ == "__main__":
    run()
