"""Adapters to the medical-imaging ecosystem: MONAI ``MetaTensor`` samples and TorchIO ``Subject`` s.

* :mod:`radiobject.ml.adapters.monai` — ``meta_tensors=True`` on any loader (or
  :func:`~radiobject.ml.adapters.monai.to_meta` on a sample) gives ``image`` / ``label`` as MONAI
  ``MetaTensor`` s carrying the sample's real affine (the volume's, shifted to the patch origin), so
  MONAI spatial transforms act in millimetres and update it;
* :mod:`radiobject.ml.adapters.torchio` — :func:`~radiobject.ml.adapters.torchio.subjects_dataset`
  gives a ``tio.SubjectsDataset`` of lazily read ``ScalarImage`` / ``LabelMap`` with the real affine,
  for ``tio.Queue`` and TorchIO's samplers.

Each module imports its library only when used (``pip install radiobject[ml]`` brings MONAI;
TorchIO is installed separately).
"""
