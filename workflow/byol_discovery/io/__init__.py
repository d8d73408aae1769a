"""Reading and writing: image files, catalogues, the HDF5 image store, atomic outputs."""
