# Rules of stage 'buckets' (see src/kxl/buckets).
