"""``python -m ko_hf_cli ...`` (e.g. ``torchrun --nproc-per-node 2 -m ko_hf_cli bert-base-cased --dataset imdb``)."""

from ko_hf_cli.main import main

if __name__ == "__main__":
    main()
