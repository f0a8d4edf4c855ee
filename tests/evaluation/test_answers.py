import pytest

from moss_components.evaluation.answers import accuracy, answer_is_correct, normalize_answer


@pytest.mark.parametrize(
    "text, norm",
    [("It's 7.", "it's seven"), ("  The answer is: PARIS! ", "the answer is paris"), ("dark-blue", "dark blue")],
)
def test_normalize(text, norm):
    assert normalize_answer(text) == norm


@pytest.mark.parametrize(
    "hyp, want, ok",
    [
        ("the answer is paris", "paris", True),
        ("the answer is parisian", "paris", False),
        ("the answer is 7", "seven", True),
        ("the answer is new delhi", "new delhi", True),
        ("the answer is delhi", "new delhi", False),
        ("", "paris", False),
    ],
)
def test_answer_is_correct(hyp, want, ok):
    assert answer_is_correct(hyp, want) is ok


def test_accuracy_and_its_errors():
    assert accuracy(["a paris", "rome"], ["paris", "oslo"]) == 0.5
    with pytest.raises(ValueError, match="2 hypotheses for 1 expected"):
        accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty after normalization"):
        answer_is_correct("x", "?!")
