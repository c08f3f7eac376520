"""`cnnshape predict`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from ..views import Format
from .app import app
from .errors import friendly_errors
from .options import DeviceOption, FormatOption
from .output import emit, model_prints_to_stderr, print_json


@app.command()
@friendly_errors
def predict(
    run: Annotated[str, typer.Argument(help="A run folder or a checkpoint.pt file.")],
    images: Annotated[
        list[str], typer.Argument(help="Image files (PNG, JPEG, WebP, BMP) or folders of them.")
    ],
    top: Annotated[
        int | None,
        typer.Option(
            "--top", "-k", min=1, help="Classes per image (default 5, or every class if fewer)."
        ),
    ] = None,
    device: DeviceOption = None,
    format: FormatOption = Format.table,
) -> None:
    """The most probable classes of each image, by a trained run's model, with the run's own
    preprocessing (its channels, size and scaling).

    Example: cnnshape predict runs/mine photo.jpg photos/
    """
    from ..train.display import prediction_view
    from ..train.predict import predict as predict_images

    with model_prints_to_stderr():
        result = predict_images(run, images, top, device)
    if format is Format.json:
        print_json(asdict(result))
    else:
        emit(prediction_view(result), format)
