"""The README's Python quick start: find a learning rate, train one cycle into a run folder.

    python examples/quickstart.py        # writes ./runs/<date>_<time>-quickstart/
"""

import epochal
from epochal import EarlyStopping, Learner, ModelCheckpoint, ProgressBar

epochal.seed_everything(0)
data = epochal.image_folder_loaders(epochal.get_dataset("cifar10-mini"), valid_pct=0.2, batch_size=64,
                                    augment=["flip", "translate(pad=2)"])
model = epochal.create_model("airbench", num_classes=len(data.classes), widths=[32, 64, 128])
learner = Learner(model, data, optimizer="sgd", weight_decay=5e-4, metrics=["accuracy"],
                  callbacks=[ProgressBar(), ModelCheckpoint(monitor="valid/accuracy"),
                             EarlyStopping("valid/accuracy", patience=3)],
                  run_dir=epochal.create_run_dir("runs", "quickstart"), seed=0)

found = learner.lr_find(num=50)                         # a probe: the learner is unchanged afterwards
learner.fit(epochal.one_cycle(4, found.suggestion))     # the suggestion goes straight in
metrics = learner.validate()                            # {'valid/loss': ..., 'valid/accuracy': ...}
print(f"lr {found.suggestion:.3g} -> validation accuracy {metrics['valid/accuracy']:.3f}")
assert metrics["valid/accuracy"] > 0.35, metrics        # 10 classes: chance is 0.10
