"""Models: a registry, the RegNet design space, classic families, weight converters, output-bias init.

Every model exposes ``layer_groups()`` (input to output, head last), ``head`` and (for classifiers)
``reset_classifier(num_classes)``, and ``default_input_size``. See docs/models.md.

Examples:
    >>> from epochal.models import create, list_models, model_summaries
    >>> model = create("regnety_004", num_classes=10, stem="cifar")
    >>> [row["name"] for row in model_summaries("resnet*")]
    ['resnet18', 'resnet34', 'resnet50']
"""

from epochal.models._base import StagedClassifier
from epochal.models._registry import (
    ModelInfo,
    count_macs,
    count_params,
    create,
    example_input,
    get_model_info,
    list_families,
    list_models,
    model_summaries,
    register_model,
)
from epochal.models.airbench import AirbenchNet
from epochal.models.autoencoder import ConvAutoencoder, ConvEncoderClassifier, MLPAutoencoder
from epochal.models.convert import ConversionReport, convert_state_dict, equivalent_model, load_pretrained
from epochal.models.densenet import DenseNet
from epochal.models.inception import InceptionResNet, InceptionResNetBlock, InceptionStem
from epochal.models.init import class_priors_from_targets, init_output_bias
from epochal.models.layers import ClassifierHead, ConcatPool2d, DropPath, make_divisible, pad_input_channels
from epochal.models.preresnet import PreResNet
from epochal.models.regnet import PRESETS, RegNet, RegNetParams, StageSpec, quantized_linear_widths
from epochal.models.resnet import ResNet
from epochal.models.separable import SeparableConv2d, SeparableConvNet
from epochal.models.tabular import TabularMLP, embedding_size
from epochal.models.vgg import VGG

__all__ = [
    "PRESETS",
    "VGG",
    "AirbenchNet",
    "ClassifierHead",
    "ConcatPool2d",
    "ConvAutoencoder",
    "ConvEncoderClassifier",
    "ConversionReport",
    "DenseNet",
    "DropPath",
    "InceptionResNet",
    "InceptionResNetBlock",
    "InceptionStem",
    "MLPAutoencoder",
    "ModelInfo",
    "PreResNet",
    "RegNet",
    "RegNetParams",
    "ResNet",
    "SeparableConv2d",
    "SeparableConvNet",
    "StageSpec",
    "StagedClassifier",
    "TabularMLP",
    "class_priors_from_targets",
    "convert_state_dict",
    "count_macs",
    "count_params",
    "create",
    "embedding_size",
    "equivalent_model",
    "example_input",
    "get_model_info",
    "init_output_bias",
    "list_families",
    "list_models",
    "load_pretrained",
    "make_divisible",
    "model_summaries",
    "pad_input_channels",
    "quantized_linear_widths",
    "register_model",
]
