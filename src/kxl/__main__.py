from kxl.cli import main

raise SystemExit(main())
