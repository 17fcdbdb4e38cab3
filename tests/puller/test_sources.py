"""Source parsing: what is accepted, and a precise INVALID_ARGUMENT on `source` for everything else."""

import pytest

from services.core.errors import InvalidArgument
from services.puller.sources import HFSource, TorchHubSource, parse_source


@pytest.mark.parametrize("text, expected", [
    ("hf://org/tiny", HFSource("org/tiny", None)),
    ("hf://org/tiny@v1.0", HFSource("org/tiny", "v1.0")),
    ("hf://Org-1/my_model.v2@refs/pr/3", HFSource("Org-1/my_model.v2", "refs/pr/3")),
    ("hf://org/tiny@" + "a" * 40, HFSource("org/tiny", "a" * 40)),
    ("torchhub://pytorch/vision/resnet18", TorchHubSource("pytorch/vision", "main", "resnet18")),
    ("torchhub://pytorch/vision:v0.15.2/resnet18", TorchHubSource("pytorch/vision", "v0.15.2", "resnet18")),
])
def test_accepted(text, expected):
    assert parse_source(text) == expected


def test_pinned_uris():
    assert HFSource("org/tiny", "main").uri("c" * 40) == "hf://org/tiny@" + "c" * 40
    th = TorchHubSource("pytorch/vision", "main", "resnet18")
    assert th.uri("ab" * 32) == "torchhub://pytorch/vision:main/resnet18@sha256:" + "ab" * 32
    assert th.default_name == "pytorch/vision/resnet18"


@pytest.mark.parametrize("text, needle", [
    ("", "is required"),
    ("org/tiny", "needs a scheme"),
    ("s3://bucket/key", "unknown scheme 's3'"),
    ("hf://tiny", "hf://ORG/NAME"),
    ("hf://org/a/b", "hf://ORG/NAME"),
    ("hf://org/ti--ny", "NAME"),
    ("hf://org/-tiny", "NAME"),
    ("hf://org/tiny@", "revision"),
    ("hf://org/tiny@../main", "revision"),
    ("hf://org/tiny@main/", "revision"),
    ("hf://org/tiny @main", "whitespace"),
    ("hf://org/tiny\n", "whitespace"),
    ("torchhub://pytorch/vision", "OWNER/REPO[:REF]/ENTRY"),
    ("torchhub://pytorch/vision:/resnet18", "REF"),
    ("torchhub://pytorch/vision/resnet-18", "ENTRY"),
    ("torchhub://pytorch/vision/res net", "whitespace"),
    ("torchhub://pyt_orch/vision/resnet18", "OWNER"),
    ("torchhub://pytorch/vision/r\u0435snet18", "must be ASCII"),  # Cyrillic 'е'
    ("torchhub://\uff50ytorch/vision/resnet18", "U+FF50"),  # fullwidth 'p'
    ("hf://org/tiny" + "x" * 2000, "longer than"),
])
def test_refused_with_the_field_and_reason(text, needle):
    with pytest.raises(InvalidArgument) as caught:
        parse_source(text)
    assert caught.value.field == "source"
    assert needle in caught.value.message
