# Rules of stage 'plan' (see src/kxl/plan).
