from dropreel.cli.main import main

raise SystemExit(main())
