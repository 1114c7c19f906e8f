"""The reference port's discriminator passes, kept as the test reference for the one-pass
`training.losses.common.DInput.score`: a self-conditioned D labels the image first
(D.pose_only) and scores it given the detached label (D.score_given), two trunk passes."""

from training.blur import blur_kernel
from training.losses.common import DInput


def score(d_input: DInput, D, img, blur_sigma, c=None, update_emas=False):
    """`DInput.score` of the reference port: (score [N, 1], the pair D scored)."""
    if d_input.blur_mode == 'single' or blur_kernel(blur_sigma) is None:
        x = d_input.prepare(img, blur_sigma)
        if not getattr(D, 'self_condition', False):
            return D(x, c, update_emas=update_emas)['score'], x
        return D.score_given(x, D.pose_only(x).detach()), x
    return d_input.score(D, img, blur_sigma, c, update_emas)   # 'reference' blur: already two passes
