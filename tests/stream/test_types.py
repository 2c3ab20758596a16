import numpy as np
import pytest

from stream.types import AGE_GROUPS, NO_TRACK, Faces, Frame, age_group_index


def make_faces(n: int) -> Faces:
    xyxy = np.array([[i * 10, 0, i * 10 + 8, 8] for i in range(n)], np.float32).reshape(-1, 4)
    return Faces(xyxy=xyxy, score=np.linspace(0.5, 1, n), landmarks=np.zeros((n, 5, 2)),
                 data={"extra": np.arange(n)})


def test_defaults_and_dtypes():
    faces = make_faces(3)
    assert faces.xyxy.dtype == np.float32 and faces.score.dtype == np.float32
    assert faces.track_id.tolist() == [NO_TRACK] * 3
    assert len(Faces.empty()) == 0 and Faces.empty().landmarks.shape == (0, 5, 2)


def test_mask_and_index_keep_rows_together():
    faces = make_faces(4)
    sub = faces[np.array([True, False, True, False])]
    assert sub.data["extra"].tolist() == [0, 2]
    assert sub.xyxy[:, 0].tolist() == [0, 20]
    assert len(faces[1]) == 1 and faces[1].data["extra"].tolist() == [1]


def test_concatenate_and_with_data():
    faces = Faces.concatenate([make_faces(2), make_faces(3)])
    assert len(faces) == 5 and faces.data["extra"].tolist() == [0, 1, 0, 1, 2]
    assert faces.with_data(x=np.ones(5)).data["x"].shape == (5,)
    assert len(Faces.concatenate([])) == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"xyxy": np.zeros((2, 3))}, ValueError, r"xyxy must have shape \(n, 4\)"),
        ({"score": np.zeros(3)}, ValueError, "score has 3 rows"),
        ({"landmarks": np.zeros((2, 4, 2))}, ValueError, r"landmarks must have shape"),
        ({"data": {"x": np.zeros(5)}}, ValueError, r"data\['x'\] must have 2 rows"),
    ],
)
def test_validation(kwargs, error, match):
    base = {"xyxy": np.zeros((2, 4)), "score": np.zeros(2), "landmarks": np.zeros((2, 5, 2))}
    with pytest.raises(error, match=match):
        Faces(**{**base, **kwargs})


@pytest.mark.parametrize(
    ("image", "error"),
    [(np.zeros((4, 4, 3), np.float32), TypeError), (np.zeros((4, 4), np.uint8), ValueError)],
)
def test_frame_validation(image, error):
    with pytest.raises(error):
        Frame(0, 0.0, image)


@pytest.mark.parametrize(
    ("age", "group"),
    [(0, "01-10"), (1, "01-10"), (10, "01-10"), (10.9, "01-10"), (11, "11-20"), (30, "21-30"), (31, "31-40"),
     (55, "41-55"), (56, "56-65"), (66, "66-80"), (80, "66-80"), (81, "80+"), (116, "80+")],
)
def test_age_group_index(age, group):
    assert AGE_GROUPS[int(age_group_index(age))] == group
