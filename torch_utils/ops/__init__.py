"""Low-level ops with the StyleGAN2/EG3D public APIs (SPEC §11.1).

Each op has a pure-PyTorch reference (differentiable to every order) and, where it pays
off, a Triton kernel chosen through `torch_utils.custom_ops` (`impl='ref'|'cuda'|'triton'`,
`POF3D_IMPL=ref` forces the reference everywhere).
"""
