"""Bottom layer: numpy 1.24's behaviour reproduced on any numpy (type promotion with value-based
casting, and the sorts that decide which signed zero ``numpy.unique`` keeps). Concrete ML 1.7.0
ran on numpy 1.24; these modules make intquant's results identical on numpy 2."""
