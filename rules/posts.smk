# Rules of stage 'posts' (see src/kxl/posts).
