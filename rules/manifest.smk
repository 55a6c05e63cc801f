# Rules of stage 'manifest' (see src/kxl/manifest).
