from fsrouter.cli import main

raise SystemExit(main())
