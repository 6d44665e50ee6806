from agentwatch.entry import main

raise SystemExit(main())
