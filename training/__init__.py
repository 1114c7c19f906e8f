"""PoF3D/EG3D model, loss and training code (networks, rendering, losses, loop)."""
