from icn_sim.cli import main

raise SystemExit(main())
