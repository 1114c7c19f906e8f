"""Small generic helpers with the StyleGAN2/EG3D `dnnlib` API."""

from .util import EasyDict, make_cache_dir_path  # noqa: F401
