"""Volume rendering of tri-plane radiance fields (SPEC §4.4-4.5).

Modules: `ray_sampler` (pixel rays), `math_utils` (ray/box, batched linspace), `samplers`
(stratified and importance depths), `triplane_sampling` (plane axes, projection, features),
`ray_marcher` (alpha compositing), `renderer` (`ImportanceRenderer`, which ties them together).
Shape notation everywhere: N batch, M rays (R*R), S samples per ray, C channels.
"""
