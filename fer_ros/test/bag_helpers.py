"""Helpers for the bag tests: generated frames and hand-made malformed bags."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_ros.tools.bagtools import IMAGE_TYPE, image_message, open_writer, typestore


def numbered_frames(n: int, size=(48, 64)) -> list[np.ndarray]:
    """`n` RGB frames whose pixel values encode their index (frame i is filled with 3*i, 3*i+1, 3*i+2 per channel,
    so a decoded frame tells which one it was)."""
    h, w = size
    out = []
    for i in range(n):
        f = np.empty((h, w, 3), np.uint8)
        f[:] = ((3 * i) % 256, (3 * i + 1) % 256, (3 * i + 2) % 256)
        out.append(f)
    return out


def frame_number(rgb8: np.ndarray) -> int:
    """Inverse of `numbered_frames` (for n < 86)."""
    return int(rgb8[0, 0, 0]) // 3


def write_mixed_bag(path: Path, storage: str = "sqlite3", topic: str = "/camera/image_raw") -> dict:
    """A bag whose image topic holds, in order: 2 good frames, one message with an unknown encoding, one with
    garbage bytes instead of CDR, one too short for its size, 2 good frames; plus a String topic /chatter.
    Returns what a reader should find."""
    store = typestore()
    writer = open_writer(path, storage, overwrite=True)
    try:
        conn = writer.add_connection(topic, IMAGE_TYPE, typestore=store)
        chat = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=store)
        frames = numbered_frames(7)
        t = 1_700_000_000_000_000_000

        def put(i: int, msg=None, raw: bytes | None = None) -> None:
            data = raw if raw is not None else store.serialize_cdr(msg, IMAGE_TYPE)
            writer.write(conn, t + i * 100_000_000, data)

        put(0, image_message(frames[0], t, "cam"))
        put(1, image_message(frames[1], t + 100_000_000, "cam"))
        odd = image_message(frames[2], t + 200_000_000, "cam")
        odd.encoding = "32FC7"
        put(2, odd)
        put(3, raw=b"\x00\x01garbage")
        short = image_message(frames[4], t + 400_000_000, "cam")
        short.data = short.data[:10]
        put(4, short)
        put(5, image_message(frames[5], t + 500_000_000, "cam"))
        put(6, image_message(frames[6], t + 600_000_000, "cam"))
        String = store.types["std_msgs/msg/String"]
        writer.write(chat, t, store.serialize_cdr(String(data="hello"), "std_msgs/msg/String"))
    finally:
        writer.close()
    return {"good_indices": [0, 1, 5, 6], "messages": 7,
            "skipped": {"undecodable images": 2, "undeserializable messages": 1}}


def tiny_model_dir(base: Path) -> Path:
    """A small untrained ckplus8 model exported to `base`/tiny_model (made once per test session: reused when its
    manifest is there). For tests that need a real engine, not a good model."""
    out = Path(base) / "tiny_model"
    if (out / "manifest.json").is_file():
        return out
    import torch

    from fer_ros import difference_image
    from fer_ros.classes import class_names
    from fer_ros.crop import CropConfig
    from fer_ros.export import export_model
    from fer_ros.manifest import Manifest
    from fer_ros.nets.registry import create_model
    from fer_ros.preprocess import PREPROCESS_SPEC

    torch.manual_seed(0)
    cfg = {"size": 32, "frames": 3, "geo_channels": len(difference_image.CHANNELS), "geo_size": difference_image.SIZE,
           "app": {"widths": (4, 8, 8, 8), "hidden": 16}, "geo": {"width": 4, "hidden": 16}}
    names = list(class_names("ckplus8"))
    model = create_model("agn3d_c3d", num_classes=len(names), **cfg)
    manifest = Manifest(name="tiny_test_model", class_set="ckplus8", class_names=names, arch="agn3d_c3d",
                        arch_cfg=cfg, preprocess=PREPROCESS_SPEC(CropConfig(size=32)),
                        training={"note": "untrained, for tests"})
    export_model(model, manifest, out)
    return out
