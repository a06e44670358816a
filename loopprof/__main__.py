from loopprof.cli import main

raise SystemExit(main())
