"""Optional REP-155 (ROS4HRI) output: `/humans/faces/tracked` (hri_msgs/IdsList) and
`/humans/faces/<id>/expression` (hri_msgs/Expression) for every tracked face.

hri_msgs is not a dependency: when it does not import (`import_hri_msgs` gives None), `Rep155Publisher.create`
returns None, and fer_node says why (HRI_MSGS_MISSING): a warning at start, a refused parameter change later. The
topics are REP-155's, under the absolute `/humans/faces/`, whatever the node's namespace (remap them to move them).
Track ids are unique within one node only, so a face's REP-155 id starts with the node's fully qualified name as
one name token and a checksum of that name: track 3 of `/cam1/fer_node` is `cam1_fer_node_<8 hex digits>_face3`,
and two nodes (two cameras) never publish the same id, however their names' tokens join.

Expression carries one label, valence, arousal and confidence, with no contempt and no per-class scores: the CK+
classes map to the nearest REP-155 labels (contempt -> skeptical), and valence/arousal are the probability-weighted
mean of per-class positions on Russell's circumplex (rough, literature-typical values in [-1, 1]).
"""
from __future__ import annotations

import zlib
from typing import Any, Iterable

import numpy as np

#: Why the REP-155 output cannot be made.
HRI_MSGS_MISSING = "hri_msgs is not installed (apt install ros-jazzy-hri-msgs)"

#: CK+ class -> REP-155 expression label.
EXPRESSION_LABEL = {
    "anger": "angry", "contempt": "skeptical", "disgust": "disgusted", "fear": "scared", "happy": "happy",
    "sadness": "sad", "surprise": "surprised", "neutral": "neutral",
}

#: CK+ class -> (valence, arousal), each in [-1, 1].
VALENCE_AROUSAL = {
    "anger": (-0.6, 0.7), "contempt": (-0.5, 0.2), "disgust": (-0.7, 0.3), "fear": (-0.6, 0.8),
    "happy": (0.8, 0.5), "sadness": (-0.7, -0.4), "surprise": (0.2, 0.8), "neutral": (0.0, 0.0),
}


def import_hri_msgs():
    """The module hri_msgs.msg, or None when it does not import."""
    try:
        import hri_msgs.msg as hri
    except ImportError:
        return None
    return hri


def rep155_id_prefix(node_fqn: str) -> str:
    """The start of a node's REP-155 face ids: its fully qualified name as one name token, a checksum of that name
    and "_" ("/cam1/fer_node" -> "cam1_fer_node_9c2455a2_"). The checksum (CRC-32 of the name, 8 hex digits) keeps
    apart names whose tokens join alike ("/front/left/fer_node", "/front_left/fer_node"); the tokens of a ROS name
    never start with a digit, so neither does the id."""
    name = str(node_fqn)
    tokens = [t for t in name.split("/") if t]
    if not tokens:
        return ""
    return f"{'_'.join(tokens)}_{zlib.crc32(name.encode()):08x}_"


def face_rep155_id(face_id: int, prefix: str = "") -> str:
    """REP-155 face id of a track id, after the node's `prefix` (rep155_id_prefix)."""
    return f"{prefix}face{int(face_id)}"


def valence_arousal(class_names, probs) -> tuple[float, float]:
    """Probability-weighted (valence, arousal) over the classes; unknown class names count as (0, 0)."""
    table = np.array([VALENCE_AROUSAL.get(str(n), (0.0, 0.0)) for n in class_names], np.float64)
    p = np.asarray(probs, np.float64).reshape(-1)
    total = p.sum()
    if total <= 0 or p.size != len(table):
        return 0.0, 0.0
    v, a = (p / total) @ table
    return float(v), float(a)


class Rep155Publisher:
    """Publishes tracked ids and one Expression topic per face. A face's publisher is destroyed once the face has
    been absent for `forget_after_s` (s, image time), so topics do not flicker on short misses."""

    def __init__(self, node, hri_msgs_module, qos_depth: int = 10, forget_after_s: float = 1.0,
                 id_prefix: str = "") -> None:
        self._node = node
        self._msgs = hri_msgs_module
        self.id_prefix = id_prefix
        self._depth = qos_depth
        self.forget_after_s = forget_after_s
        self._tracked_pub = node.create_publisher(hri_msgs_module.IdsList, "/humans/faces/tracked", qos_depth)
        self._face_pubs: dict[int, Any] = {}
        self._last_seen_s: dict[int, float] = {}

    @classmethod
    def create(cls, node, qos_depth: int = 10, forget_after_s: float = 1.0) -> "Rep155Publisher | None":
        """A publisher with the node's id prefix when hri_msgs imports; otherwise None (HRI_MSGS_MISSING says
        why)."""
        hri = import_hri_msgs()
        if hri is None:
            return None
        return cls(node, hri, qos_depth, forget_after_s, rep155_id_prefix(node.get_fully_qualified_name()))

    def publish(self, header, results: Iterable[Any], stamp_s: float) -> None:
        """Publish the ids of this frame's faces and the expression of every face whose window was ready;
        `stamp_s` is the frame's time (s)."""
        results = sorted(results, key=lambda r: int(r.id))
        ids = self._msgs.IdsList()
        ids.header = header
        ids.ids = [face_rep155_id(r.id, self.id_prefix) for r in results]
        self._tracked_pub.publish(ids)
        for r in results:
            self._last_seen_s[int(r.id)] = stamp_s
            if not r.window_ready or r.probs is None:
                continue
            pub = self._face_pubs.get(int(r.id))
            if pub is None:
                topic = f"/humans/faces/{face_rep155_id(r.id, self.id_prefix)}/expression"
                pub = self._node.create_publisher(self._msgs.Expression, topic, self._depth)
                self._face_pubs[int(r.id)] = pub
            msg = self._msgs.Expression()
            msg.header = header
            msg.expression = EXPRESSION_LABEL.get(str(r.label), str(r.label))
            msg.valence, msg.arousal = valence_arousal(r.class_names, r.probs)
            msg.confidence = float(r.confidence)
            pub.publish(msg)
        gone = {f for f, seen in self._last_seen_s.items() if not 0 <= stamp_s - seen <= self.forget_after_s}
        for face_id in gone:
            del self._last_seen_s[face_id]
        self._forget(gone)

    def _forget(self, face_ids) -> None:
        for face_id in [f for f in self._face_pubs if f in face_ids]:
            self._node.destroy_publisher(self._face_pubs.pop(face_id))

    def close(self) -> None:
        """Destroy every publisher this object made."""
        self._forget(set(self._face_pubs))
        self._node.destroy_publisher(self._tracked_pub)
