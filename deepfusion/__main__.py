from deepfusion.cli import main

raise SystemExit(main())
