"""3D reconstruction from the notes, chapter 12: scenes, cameras and datasets; neural implicit surfaces.

Modules, one per topic of the notes:

* ``camera``: pinhole intrinsics, camera-to-world poses (OpenGL convention), rays.
* ``shapes``, ``render``, ``groundtruth``, ``dataset``: procedural meshes, pyrender/open3d rendering,
  signed distance and occupancy ground truth, NeRF Blender-layout export and loading.
* ``fields``, ``training``: the implicit-function network and the one fitting loop.
* ``occupancy`` (§12.1), ``deepsdf`` (§12.1), ``igr`` (§12.2), ``surface`` and ``dvr`` (§12.3).
* ``extraction`` (marching cubes) and ``metrics`` (IoU, Chamfer-L1, normal consistency, F-score).
"""

#: Half-width of the scene box ``[-SCENE_BOUND, SCENE_BOUND]^3``. Shapes are normalised to fit
#: ``[-0.5, 0.5]^3``; the box adds a margin so that uniform samples, marching-cubes grids and ray
#: marching all see empty space around every surface.
SCENE_BOUND = 0.55
