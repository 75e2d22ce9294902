"""`python -m busadv attention CHECKPOINT`: does the model's attention stay on the lesion as epsilon grows?

The pointing game on the checkpoint's own held-out images that have an outlined lesion (phantoms
always; BUSI when its `_mask.png` files are there), with Grad-CAM maps from the grad-cam package.
"""

from __future__ import annotations

import argparse

from busadv.cli import arguments
from busadv.cli.output import ProgressPrinter


def cmd_attention(args: argparse.Namespace) -> int:
    from busadv.data import load_dataset, stratified_subset
    from busadv.experiments import test_split_for
    from busadv.explain import lesion_images, pointing_game, pointing_table
    from busadv.models.checkpoints import load_checkpoint
    from busadv.settings import pick_device

    checkpoint = load_checkpoint(args.checkpoint, device=pick_device(args.device))
    dataset = load_dataset(args.data, checkpoint.image_size)
    test_set, which = test_split_for(checkpoint, dataset)
    images = lesion_images(test_set)  # refuses, saying why, when the data has no lesion outlines
    if args.limit and args.limit < len(images):
        images = stratified_subset(images, args.limit, seed=0)
    print(f"test images: {which}; {len(images)} with an outlined lesion ({dataset.source})")
    rows = pointing_game(checkpoint.require_model(), images, args.attack, args.epsilons, arch=checkpoint.arch,
                         tolerance=args.tolerance, pgd_steps=args.pgd_steps, progress=ProgressPrinter())
    print(pointing_table(rows))
    print("peak on lesion: share of images whose Grad-CAM peak lies on the lesion (the pointing game); attention on "
          "lesion: mean share of the map inside it, beside the lesion's share of the image (what an even map scores). "
          "Each map explains the model's own answer on that image.")
    arguments.write_files([r.to_dict() for r in rows], args.csv)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from busadv.attacks import explorer_attacks

    p = arguments.checkpoint_command(sub, "attention",
                                     "Grad-CAM pointing game: does attention stay on the lesion as ε grows?")
    p.add_argument("--attack", default="fgsm", choices=[s.name for s in explorer_attacks()])
    p.add_argument("--epsilons", type=arguments.epsilon_list, default="0,2/255,8/255",
                   help="comma list; 0 is the clean image")
    p.add_argument("--tolerance", type=int, default=0,
                   help="pixels the lesion is grown by for the pointing game (Zhang et al. use 15 at 224 px)")
    p.add_argument("--limit", type=int, default=0, help="at most this many lesion images (stratified); 0: all")
    p.add_argument("--pgd-steps", type=int, default=10)
    p.add_argument("--csv", type=arguments.rows_file, help="write the rows as .csv or .json")
    p.set_defaults(func=cmd_attention)
