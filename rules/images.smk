# Rules of stage 'images' (see src/kxl/images).
