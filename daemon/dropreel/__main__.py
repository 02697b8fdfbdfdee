from dropreel.cli import main

raise SystemExit(main())
