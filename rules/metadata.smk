# Rules of stage 'metadata' (see src/kxl/metadata).
