from kongsim.cli import main

raise SystemExit(main())
