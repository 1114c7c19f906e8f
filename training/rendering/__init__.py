"""Volume rendering (SPEC §4.4-4.5): one package, importing nothing from the layers above it.

    options      RenderingOptions: the renderer's settings, typed and checked once
    rays         pixel rays (RaySampler), ray limits, sample points o + t d
    math_utils   ray/box intersection, batched linspace, unit vectors
    samplers     stratified (coarse) and importance (fine) depths
    field        what the renderer queries: the Field interface, TriplaneField
    planes       tri-plane axes, projection, bilinear sampling (+ the plane-mean gather)
    decoder      EG3D's OSG decoder (features -> rgb, raw sigma)
    compositing  the alpha rules and the ray marches (MipRayMarcher2; per-sample, pi-GAN/GOF)
    depth_samplers  the pi-GAN/GOF depth samplers as strategies (importance_nerf, surface_window)
    fused        the tri-plane stages fused into one Triton kernel (_triton_triplane)
    renderer     ImportanceRenderer: the stages in order

Where a new representation, alpha rule or shading stage plugs in: docs/architecture.md.
Shape notation everywhere: N batch, M rays (R*R), S samples per ray, C channels.
"""
