"""Fast, correct, forgiving input pipelines for images and tables.

Images are decoded once into a packed uint8 cache, served from the device (or streamed) in
batches whose order and augmentation are a pure function of (seed, epoch, batch index), and
augmented with batched tensor operations. Tables are preprocessed by a fitted, stored transform.
Your own torch DataLoaders, iterables of batches and arrays are adapted by ``from_loader`` and
``from_tensors``. See ``docs/data.md`` and ``docs/your-own-data.md``.
"""

from epochal.data.adapters import (
    as_data_loaders,
    as_epoch_loader,
    as_evaluation_loader,
    from_loader,
    from_tensors,
)
from epochal.data.augment import (
    AUGMENTATIONS,
    AlternatingFlip,
    Augmentation,
    BatchContext,
    CenterCrop,
    ColorJitter,
    Compose,
    CutMix,
    Cutout,
    Flip,
    ImageAugmentation,
    Lighting,
    MixUp,
    Normalize,
    RandomResizedCrop,
    Resize,
    RotateScale,
    Translate,
    build_augmentations,
    eval_transform,
    parse_augmentation,
    predict_tta,
    register_augmentation,
    tta_views,
)
from epochal.data.base import ArrayLoader, Batch, DataLoaders, EpochLoader, batch_generator
from epochal.data.batches import BatchFormat
from epochal.data.datasets import DATASETS, DatasetSpec, get_dataset, register_dataset
from epochal.data.decode import IMAGE_EXTENSIONS, BadImageError, ScanReport, decode_image, scan_images
from epochal.data.download import ChecksumError, UnsafeArchiveError, download_file, safe_extract
from epochal.data.folders import (
    ImageItems,
    find_image_files,
    image_folder_items,
    label_csv_items,
    load_classes,
    save_classes,
    unlabelled_items,
)
from epochal.data.images import channel_stats, image_folder_loaders, list_images
from epochal.data.loaders import ImageLoader, TensorLoader
from epochal.data.packed import PackedImages, pack_image_cache
from epochal.data.packed_checks import CacheCheck, CorruptCacheError, ShardCheck, verify_image_cache
from epochal.data.report import SKIP_REASONS, DataReport, SkippedFile, TableFinding
from epochal.data.samplers import BalancedSampler, RandomSampler, SequentialSampler
from epochal.data.splits import (
    exclude_class,
    merge_relabelled,
    random_split,
    relabel_neutral,
    stratified_split,
)
from epochal.data.tabular import TabularPreprocessor
from epochal.data.tabular_loaders import MalformedRowsError, read_table, tabular_loaders
from epochal.data.text_files import FileEncodingError
from epochal.data.wrappers import IterableLoader, TorchLoader

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "IMAGE_EXTENSIONS",
    "SKIP_REASONS",
    "AlternatingFlip",
    "ArrayLoader",
    "Augmentation",
    "BadImageError",
    "BalancedSampler",
    "Batch",
    "BatchContext",
    "BatchFormat",
    "CacheCheck",
    "CenterCrop",
    "ChecksumError",
    "ColorJitter",
    "Compose",
    "CorruptCacheError",
    "CutMix",
    "Cutout",
    "DataLoaders",
    "DataReport",
    "DatasetSpec",
    "EpochLoader",
    "FileEncodingError",
    "Flip",
    "ImageAugmentation",
    "ImageItems",
    "ImageLoader",
    "IterableLoader",
    "Lighting",
    "MalformedRowsError",
    "MixUp",
    "Normalize",
    "PackedImages",
    "RandomResizedCrop",
    "RandomSampler",
    "Resize",
    "RotateScale",
    "ScanReport",
    "SequentialSampler",
    "ShardCheck",
    "SkippedFile",
    "TableFinding",
    "TabularPreprocessor",
    "TensorLoader",
    "TorchLoader",
    "Translate",
    "UnsafeArchiveError",
    "as_data_loaders",
    "as_epoch_loader",
    "as_evaluation_loader",
    "batch_generator",
    "build_augmentations",
    "channel_stats",
    "decode_image",
    "download_file",
    "eval_transform",
    "exclude_class",
    "find_image_files",
    "from_loader",
    "from_tensors",
    "get_dataset",
    "image_folder_items",
    "image_folder_loaders",
    "label_csv_items",
    "list_images",
    "load_classes",
    "merge_relabelled",
    "pack_image_cache",
    "parse_augmentation",
    "predict_tta",
    "random_split",
    "read_table",
    "register_augmentation",
    "register_dataset",
    "relabel_neutral",
    "safe_extract",
    "save_classes",
    "scan_images",
    "stratified_split",
    "tabular_loaders",
    "tta_views",
    "unlabelled_items",
    "verify_image_cache",
]
