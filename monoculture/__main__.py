from monoculture.cli import main

raise SystemExit(main())
