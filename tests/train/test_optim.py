from __future__ import annotations

import pytest

from kxl.errors import KxlError
from kxl.train.optim import check_bitsandbytes


@pytest.mark.parametrize("version", ["0.36.0", "0.37.2", "0.41.0", "0.41.3.post2", "0.40.0.dev0"])
def test_buggy_bitsandbytes_refused(version: str) -> None:
    with pytest.raises(KxlError, match="8-bit optimizer bug"):
        check_bitsandbytes(version)


@pytest.mark.parametrize("version", ["0.35.4", "0.42.0", "0.45.0", "0.50.2", "1.0.0"])
def test_other_versions_accepted(version: str) -> None:
    check_bitsandbytes(version)


def test_installed_version_is_accepted() -> None:
    import importlib.metadata

    check_bitsandbytes(importlib.metadata.version("bitsandbytes"))
