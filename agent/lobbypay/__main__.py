from lobbypay.cli import main

raise SystemExit(main())
