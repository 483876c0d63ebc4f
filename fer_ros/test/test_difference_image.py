"""The difference image: zero without motion, signed displacement at the moving points, weighted, bounded (its cost
is measured by fer-bench, not here)."""
from __future__ import annotations

import numpy as np
import pytest

from fer_ros import difference_image as di
from fer_ros.landmark_scheme import point_weights
from perception_helpers import smile, template68


def normalised(points: np.ndarray) -> np.ndarray:
    """Template points -> roughly [0.2, 0.8] normalised crop coordinates."""
    return (np.asarray(points) * 0.25 + [0.5, 0.35]).astype(np.float32)


def test_no_motion_gives_zero():
    n = normalised(template68())
    g = di.render(n, n)
    assert g.shape == (2, di.SIZE, di.SIZE) and g.dtype == np.float32
    assert np.all(g == 0)
    assert np.array_equal(di.empty(), np.zeros_like(g))


def test_displacement_where_the_point_moved():
    n = normalised(template68())
    p = n.copy()
    p[19, 1] -= 0.02  # the middle of the right brow moves up
    g = di.render(n, p)
    x, y = (n[19] * di.SIZE).astype(int)
    expected = -0.02 * di.SCALE * point_weights()[19]
    # overlapping splats of the still brow neighbours dilute it (to about a third with SIGMA_PX = 3)
    assert expected < g[1, y, x] < 0.25 * expected
    assert np.abs(g[0]).max() == 0.0
    reach = int(np.ceil(di.TRUNCATE_SIGMAS * di.SIGMA_PX)) + 1
    assert np.abs(g[1, y + reach:]).max() == 0.0  # nothing beyond the splat's reach
    p2 = n.copy()
    p2[19, 1] += 0.02
    assert np.allclose(di.render(n, p2), -g)


def test_a_mirrored_face_gives_the_mirrored_image():
    from fer_ros.landmark_scheme import IBUG68_MIRROR
    rng = np.random.default_rng(1)
    n = normalised(template68())
    p = (n + rng.normal(0, 0.01, n.shape)).astype(np.float32)

    def mirror(points):
        m = points[list(IBUG68_MIRROR)].copy()
        m[:, 0] = 1.0 - m[:, 0]
        return m

    g, gm = di.render(n, p), di.render(mirror(n), mirror(p))
    np.testing.assert_allclose(gm, g[:, :, ::-1] * np.array(di.MIRROR_SIGN, np.float32)[:, None, None], atol=1e-5)


def test_weights_and_clip():
    n = normalised(template68())
    jaw, brow = n.copy(), n.copy()
    jaw[3, 1] += 0.02
    brow[19, 1] += 0.02
    assert np.abs(di.render(n, brow)).max() > np.abs(di.render(n, jaw)).max()
    huge = normalised(smile(template68(), 2.0))
    g = di.render(n, huge)
    assert g.max() <= di.CLIP and g.min() >= -di.CLIP
    typical = di.render(n, normalised(smile(template68(), 0.1)))
    assert 0.1 < np.abs(typical).max() <= di.CLIP  # a typical smile uses a good part of the range


def test_bad_points_rejected():
    n = normalised(template68())
    with pytest.raises(ValueError):
        di.render(n[:60], n[:60])
    bad = n.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        di.render(n, bad)


def test_spec():
    assert di.GEO_SPEC["size"] == di.SIZE and di.GEO_SPEC["channels"] == ["dx", "dy"]
