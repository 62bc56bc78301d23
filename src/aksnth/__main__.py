from aksnth.cli import main

raise SystemExit(main())
