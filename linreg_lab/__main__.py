from linreg_lab.run import main

main()
