# Rules of stage 'captions' (see src/kxl/captions).
