from ballast.cli import main

raise SystemExit(main())
