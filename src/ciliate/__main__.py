from ciliate.cli.main import main

raise SystemExit(main())
