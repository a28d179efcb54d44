"""The release history's checks across jobs: cells and sums already released (differencing and
interval audits) and the differential-privacy budget each operator spends.
"""
