"""The README's Python quick start: find a learning rate, train one cycle, resume-ready run folder.

    python examples/quickstart.py [OUT_DIR]
"""

import sys
from pathlib import Path

import epochal
from epochal import EarlyStopping, Learner, ModelCheckpoint, ProgressBar

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")
epochal.seed_everything(0)

data = epochal.image_folder_loaders(epochal.get_dataset("cifar10-mini"), valid_pct=0.2, batch_size=64,
                                    augment=["flip", "translate(pad=2)"], progress=False)
model = epochal.create_model("airbench", num_classes=len(data.classes), widths=[32, 64, 128])
learner = Learner(model, data, optimizer="sgd", weight_decay=5e-4, metrics=["accuracy"],
                  callbacks=[ProgressBar(), ModelCheckpoint(monitor="valid/accuracy"),
                             EarlyStopping("valid/accuracy", patience=3)],
                  run_dir=epochal.create_run_dir(out / "runs", "quickstart"), seed=0)

found = learner.lr_find(num=60)                       # a probe: the learner is unchanged afterwards
learner.fit(epochal.one_cycle(6, found.suggestion, moms=(0.95, 0.85, 0.95)))

metrics = learner.validate()
print(f"lr {found.suggestion:.3g} -> validation accuracy {metrics['valid/accuracy']:.3f}")
assert metrics["valid/accuracy"] > 0.35, metrics  # 10 classes: chance is 0.10
assert (learner.run_dir / "checkpoints" / "best.pt").is_file()
